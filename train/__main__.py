import sys

from train.cli import train_main

sys.exit(train_main())
