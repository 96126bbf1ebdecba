"""Training: losses, LR schedulers, LightningModule, ABRTrainer."""
