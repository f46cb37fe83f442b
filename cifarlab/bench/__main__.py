from cifarlab.bench.run import main

main()
