package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/config"
)

// newBuiltinAS starts the built-in authorization server for cfg.
func newBuiltinAS(ctx context.Context, cfg *config.Gateway, log *slog.Logger) (http.Handler, func(), error) {
	return nil, func() {}, errors.New("authorization_server: builtin is not wired into serve yet; use an external issuer")
}
