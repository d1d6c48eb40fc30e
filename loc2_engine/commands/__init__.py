"""Sub-commands of the `loc2` console script; each module has HELP, add_arguments(parser), run(args)."""
