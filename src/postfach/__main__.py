from postfach.cli import main

raise SystemExit(main())
