from icd_bench.cli import main

main()
