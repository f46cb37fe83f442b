from cifarlab.commands import main

main()
