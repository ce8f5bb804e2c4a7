"""A training run: snapshot → split → fit → calibrate → thresholds → metrics, then log and register."""
