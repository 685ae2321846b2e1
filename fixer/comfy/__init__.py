"""What only runs inside ComfyUI's process: the request guard, the scan worker, the runtime."""
