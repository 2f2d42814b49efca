package dashboards_test

import (
	"os"
	"testing"

	"github.com/deploywatch/deploywatch/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
