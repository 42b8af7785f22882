package main

import (
	"github.com/mosb-dev/mosb/test/harness"
)

func dockerConfig(host, user, pass string) []byte { return harness.DockerConfigJSON(host, user, pass) }
