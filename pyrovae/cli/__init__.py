"""Command-line interface: ``pyrovae train | demo | datasets | posterior``."""
