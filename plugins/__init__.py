"""The built-in parts. They register through the same hooks as any third-party plugin."""
