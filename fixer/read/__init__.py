"""Reading workflows: formats, the graph walk, what each reference is."""
