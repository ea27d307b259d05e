.PHONY: dev test build deploy-check fleet

# Build and run everything in one process on the embedded defaults.
dev:
	bash scripts/dev.sh

# Run the whole suite on SQLite and on a throwaway PostgreSQL.
test:
	bash scripts/test.sh

build:
	swift build

# The deployment recipes against a release binary built as the Dockerfile builds it (static Swift runtime).
deploy-check:
	bash scripts/deploy-check.sh

# A fleet on this machine (PostgreSQL, RabbitMQ, serve, two beats, three workers) until Ctrl-C.
fleet:
	bash scripts/fleet.sh
