"""What a competition asks for: losses and metrics."""
