from loc2_engine.cli import main

raise SystemExit(main())
