package web

import (
	"errors"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/store"
)

func asInvalid(err error, target **admin.InvalidError) bool { return errors.As(err, target) }

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
