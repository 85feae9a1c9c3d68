"""mmdistill: multi-modal knowledge distillation for video, wired by gin."""
