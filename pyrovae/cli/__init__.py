"""Command-line interface: ``pyrovae train | demo | diagnose | datasets | posterior | experiment | check-separability``."""
