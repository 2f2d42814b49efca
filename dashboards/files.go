package dashboards

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// UIDs of the datasources the provisioning file creates; the dashboards'
// datasource variables start on them.
const (
	ClickHouseDatasourceUID = "deploywatch-clickhouse"
	PrometheusDatasourceUID = "deploywatch-prometheus"
)

// DefaultDashboardsPath is where the dashboard provider tells Grafana to read
// the JSON files from.
const DefaultDashboardsPath = "/var/lib/grafana/dashboards/deploywatch"

// FolderTitle is the Grafana folder the dashboards go into by default.
const FolderTitle = "deploywatch"

// File is one generated file, its path relative to the output directory.
type File struct {
	Path string
	Data []byte
}

// Options shape the generated provisioning files.
type Options struct {
	// DashboardsPath is where Grafana will find dashboards/*.json (default
	// DefaultDashboardsPath).
	DashboardsPath string
}

// Generate returns the dashboards as JSON (dashboards/<uid>.json) and the
// Grafana provisioning files: provisioning/datasources/deploywatch.yaml and
// provisioning/dashboards/deploywatch.yaml.
func Generate(opts Options) ([]File, error) {
	if opts.DashboardsPath == "" {
		opts.DashboardsPath = DefaultDashboardsPath
	}
	if strings.ContainsAny(opts.DashboardsPath, "\"\n") {
		return nil, fmt.Errorf("invalid dashboards path %q: it must not contain quotes or newlines", opts.DashboardsPath)
	}
	ds, err := All()
	if err != nil {
		return nil, err
	}
	var files []File
	for _, d := range ds {
		data, err := Marshal(d)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: filepath.Join("dashboards", *d.Uid+".json"), Data: data})
	}
	files = append(files,
		File{Path: filepath.Join("provisioning", "datasources", "deploywatch.yaml"), Data: []byte(datasourcesYAML)},
		File{Path: filepath.Join("provisioning", "dashboards", "deploywatch.yaml"),
			Data: []byte(strings.ReplaceAll(dashboardsYAML, "{{path}}", opts.DashboardsPath))},
	)
	return files, nil
}

// Marshal encodes a dashboard as Grafana stores it, indented.
func Marshal(d dashboard.Dashboard) ([]byte, error) {
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("cannot encode dashboard %s: %w", *d.Uid, err)
	}
	return append(data, '\n'), nil
}

// WriteFiles writes files under dir, creating directories as needed.
func WriteFiles(dir string, files []File) error {
	for _, f := range files {
		path := filepath.Join(dir, f.Path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("cannot create the directory for %s: %w", path, err)
		}
		if err := os.WriteFile(path, f.Data, 0o644); err != nil {
			return fmt.Errorf("cannot write %s: %w", path, err)
		}
	}
	return nil
}

// datasourcesYAML provisions the two datasources. Grafana replaces ${VAR}
// with its own environment when it reads the file, so no secret is written
// into it.
const datasourcesYAML = `# Grafana datasources for deploywatch's dashboards (deploywatch dashboards generate).
# Grafana replaces ${VAR} with its environment when it starts: set
# DEPLOYWATCH_CLICKHOUSE_HOST, _PORT (the native port, usually 9000), _USER,
# _PASSWORD, _DATABASE (deploywatch's database, the queries' default) and
# DEPLOYWATCH_PROMETHEUS_URL (the Prometheus that scrapes deploywatch's /metrics).
apiVersion: 1

datasources:
  - name: deploywatch ClickHouse
    type: grafana-clickhouse-datasource
    uid: deploywatch-clickhouse
    editable: true
    jsonData:
      host: ${DEPLOYWATCH_CLICKHOUSE_HOST}
      port: ${DEPLOYWATCH_CLICKHOUSE_PORT}
      protocol: native
      secure: false
      username: ${DEPLOYWATCH_CLICKHOUSE_USER}
      defaultDatabase: ${DEPLOYWATCH_CLICKHOUSE_DATABASE}
    secureJsonData:
      password: ${DEPLOYWATCH_CLICKHOUSE_PASSWORD}

  - name: deploywatch Prometheus
    type: prometheus
    uid: deploywatch-prometheus
    access: proxy
    url: ${DEPLOYWATCH_PROMETHEUS_URL}
    editable: true
`

// dashboardsYAML is the dashboard provider; {{path}} is the JSON folder.
const dashboardsYAML = `# Grafana dashboard provider for deploywatch's dashboards (deploywatch dashboards generate).
# Copy dashboards/*.json to the path below; Grafana reloads them every minute.
apiVersion: 1

providers:
  - name: deploywatch
    orgId: 1
    folder: deploywatch
    folderUid: deploywatch
    type: file
    disableDeletion: false
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: "{{path}}"
      foldersFromFilesStructure: false
`
