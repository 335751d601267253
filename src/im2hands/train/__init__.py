"""Training: losses, stage trainers, configs."""
