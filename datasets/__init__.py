"""Dataset sources. Spirograph is generated; natural-image sources read local folders."""
