from cifarlab.commands import cli

cli()
