package source_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/ferry-dev/ferry/reconciler/source"
)

// A source over a local repository: poll, check the snapshot, accept it.
func Example() {
	dir, _ := os.MkdirTemp("", "ferry-example")
	defer os.RemoveAll(dir)
	repo := filepath.Join(dir, "plans")
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", repo},
		{"-C", repo, "-c", "user.name=Ada", "-c", "user.email=ada@example.com",
			"commit", "-q", "--allow-empty", "-m", "empty"},
	} {
		if err := exec.Command("git", args...).Run(); err != nil {
			fmt.Println(err)
			return
		}
	}
	os.WriteFile(filepath.Join(repo, "wave-1.yaml"), []byte("services: [api]\n"), 0o644)
	exec.Command("git", "-C", repo, "add", ".").Run()
	exec.Command("git", "-C", repo, "-c", "user.name=Ada", "-c", "user.email=ada@example.com",
		"commit", "-q", "-m", "wave 1").Run()

	src, err := source.New(source.Config{URL: repo, Ref: source.Ref{Branch: "main"}}, filepath.Join(dir, "state"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()

	snap, changed, err := src.Poll(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	b, _ := fs.ReadFile(snap.FS, "wave-1.yaml")
	fmt.Printf("changed=%v author=%s message=%q\n%s", changed, snap.Author, snap.Message, b)

	// Validation and rendering would go here; on failure:
	//   src.Refuse(snap.Revision, err)
	if err := src.Accept(snap.Revision); err != nil {
		fmt.Println(err)
	}
	_, changed, _ = src.Poll(context.Background())
	fmt.Println("changed again:", changed, "last good is current:", src.LastGood().Revision == snap.Revision)
	// Output:
	// changed=true author=Ada <ada@example.com> message="wave 1\n"
	// services: [api]
	// changed again: false last good is current: true
}

// NeedsPerson sorts errors into those Run retries and those it reports.
func ExampleNeedsPerson() {
	fmt.Println(source.NeedsPerson(fmt.Errorf("poll: %w", source.ErrAuth)))
	fmt.Println(source.NeedsPerson(errors.New("dial tcp 127.0.0.1:1: connect: connection refused")))
	// Output:
	// true
	// false
}
