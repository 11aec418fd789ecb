package sshproxy

import "strings"

// An exec request carries a command line that the target's login shell
// runs. Only a command line that is exactly a legacy scp server gets a
// file-transfer observer; any other command line — including one that
// starts with an scp or rsync server and goes on to run something else —
// is a command, recorded byte for byte. The observer that a plain server
// command gets is strict (see fileChannel): a login shell that runs
// something else in its place is caught by the stream itself.

// scpPrograms are the names an scp server command may start with.
var scpPrograms = []string{"scp", "/usr/bin/scp", "/bin/scp", "/usr/local/bin/scp"}

// shellWords splits a command line into the words a POSIX shell would pass
// to the program, when the line is one plain command: words separated by
// blanks, made of ordinary characters, single-quoted strings, double-quoted
// strings without $, ` or \, and backslash-escaped spaces. It reports false
// for anything a shell would do more with: command separators, pipes,
// redirections, substitutions, parameter expansions, subshells, comments,
// other escapes, and control characters (newlines included).
func shellWords(cmd string) ([]string, bool) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
			continue
		case c == '\'' || c == '"':
			j := strings.IndexByte(cmd[i+1:], c)
			if j < 0 {
				return nil, false
			}
			s := cmd[i+1 : i+1+j]
			if hasControl(s) || c == '"' && strings.ContainsAny(s, "$`\\!") {
				return nil, false
			}
			w.WriteString(s)
			i += j + 1
		case c == '\\':
			if i+1 >= len(cmd) || cmd[i+1] != ' ' {
				return nil, false
			}
			w.WriteByte(' ')
			i++
		case strings.IndexByte(";&|<>()$`#", c) >= 0 || c < 0x20 || c == 0x7f:
			return nil, false
		default:
			w.WriteByte(c)
		}
		inWord = true
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, true
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// scpServer is a legacy scp server command line: scp -t (sink, the client
// uploads) or scp -f (source, the client downloads) with one path.
type scpServer struct {
	upload bool
	// dirTarget is set by -d or -r: entry names are joined to path.
	dirTarget bool
	path      string
}

// parseSCPServer accepts exactly the command lines OpenSSH's scp client
// sends in legacy mode: an scp program, flags from -t, -f, -r, -d, -p and
// -v with exactly one of -t and -f, an optional --, and one path.
func parseSCPServer(cmd string) (scpServer, bool) {
	words, ok := shellWords(cmd)
	if !ok || len(words) < 3 {
		return scpServer{}, false
	}
	known := false
	for _, p := range scpPrograms {
		known = known || words[0] == p
	}
	if !known {
		return scpServer{}, false
	}
	return parseSCPArgs(words[1:])
}

// parseSCPArgs parses the arguments of an scp server command.
func parseSCPArgs(args []string) (scpServer, bool) {
	var s scpServer
	to, from := 0, 0
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for _, f := range a[1:] {
			switch f {
			case 't':
				to++
			case 'f':
				from++
			case 'r', 'd':
				s.dirTarget = true
			case 'p', 'v':
			default:
				return scpServer{}, false
			}
		}
	}
	if to+from != 1 || len(args)-i != 1 || args[i] == "" {
		return scpServer{}, false
	}
	s.upload, s.path = to == 1, args[i]
	return s, true
}
