from im2hands.cli import main

raise SystemExit(main())
