"""Models by identity: the sha256 of every model file (hash_index), identical files across folders and
installs (duplicates), the models a workflow uses pinned by hash (lockfile), one content-addressed store
shared by many roots and machines (cache), making a root hold a lockfile's files (sync), and naming
unknown files by their hash on Civitai (identify). `commands` holds the CLI's subcommands."""

COMMANDS = ("hashes", "dupes", "lock", "sync", "identify")  # `comfy-fixer <name> ...`: fixer.identity.commands
