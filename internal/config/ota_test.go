package config

import (
	"errors"
	"strings"
	"testing"
)

func TestOTAStorageURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want string // "" = valid
	}{
		{"", ""},
		{"s3://artifacts?region=eu-central-1", ""},
		{"s3://artifacts?endpoint=http://127.0.0.1:8333&region=us-east-1&use_path_style=true&prefix=prod/", ""},
		{"gs://artifacts", "must be empty"},
		{"/srv/artifacts", "must be empty"},
		{"s3://?region=x", "names no bucket"},
		{"s3://AKIA:secret@artifacts", "AWS_ACCESS_KEY_ID"},
		{"s3://artifacts/sub", "prefix"},
		{"s3://arti facts", "not a URL"},
		{"s3://k:secret@arti facts", "not a URL"},
	} {
		cfg := Default()
		cfg.OTA.StorageURL = tc.url
		err := cfg.Validate()
		var fe *FieldError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.url, err)
		case tc.want != "" && (!errors.As(err, &fe) || fe.Field != "ota.storage_url" || !strings.Contains(fe.Message, tc.want)):
			t.Errorf("%q: got %v, want ota.storage_url: …%s…", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: the error repeats the credentials: %v", tc.url, err)
		}
	}
	// From the environment, as the other settings.
	cfg := Default()
	if err := cfg.LoadEnv(func(k string) (string, bool) {
		return "s3://from-env?region=x", k == "STEWARD_OTA_STORAGE_URL"
	}); err != nil || cfg.OTA.StorageURL != "s3://from-env?region=x" {
		t.Fatalf("STEWARD_OTA_STORAGE_URL: %q, %v", cfg.OTA.StorageURL, err)
	}
}
