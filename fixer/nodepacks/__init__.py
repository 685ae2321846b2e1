"""Missing node types: which pack provides them and installing it with ComfyUI-Manager."""
