"""Training: losses, schedules, checkpoints, the loop."""
