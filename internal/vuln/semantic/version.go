// Copyright 2026 Google LLC
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//      http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

package semantic

import (
	"errors"
	"math/big"
)

// ErrNotSameEcosystem is returned when comparing two versions of different ecosystems.
var ErrNotSameEcosystem = errors.New("version is not of the same ecosystem")

// Version provides an interface for sortable version strings.
type Version interface {
	// Compare returns an integer representing the sort order of the given Version
	// relative to the subject Version.
	//
	// The result will be 0 if v == w, -1 if v < w, or +1 if v > w.
	//
	// ErrNotSameEcosystem is returned if the given Version is not of the same
	// ecosystem as the subject Version.
	Compare(v Version) (int, error)

	// CompareStr returns an integer representing the sort order of the given string
	// when parsed as the concrete Version relative to the subject Version.
	//
	// The result will be 0 if v == w, -1 if v < w, or +1 if v > w.
	//
	// An error is returned if the given string is not a valid Version, with "valid"
	// being dependent on the underlying ecosystem of the concrete Version.
	CompareStr(str string) (int, error)
}

type components []*big.Int

func (components *components) Fetch(n int) *big.Int {
	if len(*components) <= n {
		return big.NewInt(0)
	}

	return (*components)[n]
}

func (components *components) Cmp(b components) int {
	numberOfComponents := max(len(*components), len(b))

	for i := range numberOfComponents {
		diff := components.Fetch(i).Cmp(b.Fetch(i))

		if diff != 0 {
			return diff
		}
	}

	return 0
}
