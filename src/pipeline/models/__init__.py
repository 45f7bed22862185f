"""Plain ``nn.Module`` backbones; each builds for any (C, H, W) input and class count. No Lightning, no MLflow."""
