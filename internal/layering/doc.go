// Package layering holds the test that enforces mcpgate's import rules
// (docs/architecture.md §Layering). It has no code of its own.
package layering
