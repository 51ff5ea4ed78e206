"""Group level: reads the participant outputs only, never refits."""
