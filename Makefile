.PHONY: dev test build

# Build and run everything in one process on the embedded defaults.
dev:
	bash scripts/dev.sh

# Run the whole suite on SQLite and on a throwaway PostgreSQL.
test:
	bash scripts/test.sh

build:
	swift build
