"""The web console at ``/console``: server-rendered pages for support agents and for operators."""
