// Package layering holds the tests that enforce mcpgate's repository-wide
// rules: the import rules (docs/architecture.md §Packages and layers) and
// one key per concept in the logs (docs/configuration.md §Log fields). It
// has no code of its own.
package layering
