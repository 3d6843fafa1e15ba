"""Node services: peer connections, the listener, (later) discovery and files."""
