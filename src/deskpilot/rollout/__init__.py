"""Safe rollout: which versions serve at what share, how traffic is split, and when it steps back."""
