"""What the ComfyUI install offers: model folders, loaders, what each node reads."""
