package config

import (
	"errors"
	"fmt"
	"net/url"
)

// OTAConfig is the update service (see docs/ota.md).
type OTAConfig struct {
	// StorageURL is where artifact content lives: "" for the folder
	// data_dir/artifacts, or an S3-compatible bucket,
	// s3://BUCKET?region=…[&endpoint=http://host:port&use_path_style=true],
	// shared by every node. Keys come from the standard AWS environment
	// variables, never from the URL.
	StorageURL string `yaml:"storage_url" env:"STEWARD_OTA_STORAGE_URL"`
}

// validateOTA checks the form of the OTA section; whether the bucket
// answers is checked when the server opens it.
func (c *Config) validateOTA() error {
	raw := c.OTA.StorageURL
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // without the URL, which may hold a secret by mistake
	}
	switch {
	case err != nil:
		return &FieldError{"ota.storage_url", fmt.Sprintf("not a URL (%v)", err)}
	case u.Scheme != "s3":
		return &FieldError{"ota.storage_url", "must be empty (the artifacts folder in data_dir) or s3://BUCKET?region=…[&endpoint=http://host:port&use_path_style=true]"}
	case u.User != nil:
		return &FieldError{"ota.storage_url", "must not carry credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment instead"}
	case u.Host == "":
		return &FieldError{"ota.storage_url", "names no bucket (s3://BUCKET?…)"}
	case u.Path != "" && u.Path != "/":
		return &FieldError{"ota.storage_url", "takes no path; to share a bucket, add ?prefix=NAME/"}
	}
	return nil
}
