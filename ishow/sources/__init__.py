"""Chat sources: each turns a platform (or local input) into ChatEvents."""
