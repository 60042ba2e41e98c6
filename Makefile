# The two commands of the README, and the checks run before a commit.
# Every target first makes sure the project's virtualenv (torch 2.13.0) exists.

.PHONY: demo test lint build setup

# The main job on the bundled default (see README).
demo: setup
	scripts/demo

# The test suite, as CI runs it. The report's browser test needs Chromium (Debian's
# package; scripts/setup-browser installs it when it is missing).
test: setup
	scripts/setup-browser
	scripts/cargo test --workspace

lint: setup
	cargo fmt --all --check
	scripts/cargo clippy --workspace --all-targets -- -D warnings

build: setup
	scripts/cargo build --release --workspace

setup:
	scripts/setup
