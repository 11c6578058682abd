"""Complete models built from memories and layers."""
