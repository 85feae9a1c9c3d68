from mmdistill.demo.cli import main

main()
