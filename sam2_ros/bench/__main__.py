import sys

from sam2_ros.bench.cli import main

sys.exit(main())
