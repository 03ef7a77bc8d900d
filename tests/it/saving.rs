//! `--save`, end to end through the binary: the checkpoint is written the way `cp` would
//! (through a symbolic link, keeping the file's mode and owner, never readable by others
//! while a private one is written), atomically and under a lock, refused before any training
//! where it would fail, and no file nnmnist did not make is removed, whatever its name.
use crate::common;
use crate::common::*;
use nnmnist::weights::{Entry, Weights};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::process::Stdio;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- how the file is written

#[test]
fn save_writes_through_symlinks_and_keeps_permissions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let real = tmp.path().join("real.safetensors");
    let link = tmp.path().join("link.safetensors");
    std::fs::write(&real, b"old").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    symlink(&real, &link).unwrap();
    let out = run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&link), "--data-dir", s(data.path())]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
    assert_eq!(Weights::load(&real).unwrap().state.unwrap().epochs_done, 1, "its target holds the checkpoint");
    assert_eq!(std::fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o640, "the file keeps its mode");
    // A dangling link: the file it names is created.
    let dangling = tmp.path().join("dangling.safetensors");
    let target = tmp.path().join("made.safetensors");
    symlink(&target, &dangling).unwrap();
    assert!(run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&dangling), "--data-dir", s(data.path())]).status.success());
    assert!(Weights::load(&target).is_ok() && std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    assert!(temporaries(tmp.path()).is_empty(), "{:?}", temporaries(tmp.path()));
    assert!(!tmp.path().join(".real.safetensors.lock").exists(), "the lock file is removed at the end");
}

#[test]
#[ignore = "needs root (only root can give a file to another owner): scripts/test runs it as root"]
fn save_keeps_the_owner_of_the_file_it_replaces() {
    assert_eq!(rustix::process::getuid().as_raw(), 0, "only root can give a file to another owner, so there is no other owner to keep");
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("owned.safetensors");
    std::fs::write(&ck, b"old").unwrap();
    std::os::unix::fs::chown(&ck, Some(65534), Some(65534)).unwrap();
    assert!(run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--data-dir", s(data.path())]).status.success());
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&ck).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
}

/// The temporary file of a save has the final mode from its creation: a 0600 checkpoint is
/// never, even for a moment, readable by others. Watched through /proc/self/fd while large
/// saves run in this process.
#[test]
fn a_private_checkpoint_is_never_readable_by_others_while_it_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("private.safetensors");
    std::fs::write(&ck, b"old").unwrap();
    std::fs::set_permissions(&ck, std::fs::Permissions::from_mode(0o600)).unwrap();
    let target = nnmnist::files::SaveTarget::open(&ck).unwrap();
    let entries = vec![Entry::f64("w", vec![16 << 20], vec![0.5; 16 << 20])]; // 128 MiB
    let bytes = nnmnist::checkpoint::serialize(&entries, None).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let dir = tmp.path().canonicalize().unwrap();
    let seen = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut modes = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
                    let Ok(to) = std::fs::read_link(fd.path()) else { continue };
                    // The directory itself is open too (the crate syncs it): files only.
                    if to.starts_with(&dir) && to != dir && !to.to_string_lossy().ends_with(".lock") {
                        if let Ok(m) = std::fs::metadata(fd.path()) {
                            modes.push(m.permissions().mode() & 0o777);
                        }
                    }
                }
            }
            modes
        });
        let started = Instant::now();
        // Until the watcher has seen the temporary file open a few times.
        while started.elapsed() < Duration::from_secs(60) {
            target.write(&bytes).unwrap();
            if started.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        watcher.join().unwrap()
    });
    assert!(!seen.is_empty(), "the watcher never saw the temporary file open");
    let wrong: std::collections::BTreeSet<u32> = seen.iter().copied().filter(|&m| m != 0o600).collect();
    assert!(wrong.is_empty(), "modes seen while writing: {wrong:?} (decimal)");
    assert_eq!(std::fs::metadata(&ck).unwrap().permissions().mode() & 0o777, 0o600);
}

// ---------------------------------------------------------------- refused before training

#[test]
fn save_refuses_what_is_not_a_regular_file_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("fifo.safetensors");
    mkfifo(&fifo);
    refused(&["mlp", "--save", s(&fifo)], &[s(&fifo), "it is a FIFO; nnmnist only replaces regular files"]);
    refused(&["mlp", "--save", "/dev/null"], &["/dev/null", "it is a character device"]);
    let link = tmp.path().join("to-null");
    symlink("/dev/null", &link).unwrap();
    refused(&["mlp", "--save", s(&link)], &[s(&link), "it is a character device"]);
    assert!(is_fifo(&fifo), "the FIFO is left alone");
}

/// `--save` paths that would train and then fail to save are refused before any training,
/// and before the metrics file is created: a trailing slash, and a name whose temporary
/// name beside it (`.NAME.XXXXXX`, 8 bytes longer) would pass the file system's limit.
#[test]
fn saves_that_would_fail_are_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let d = s(data.path());
    let m = tmp.path().join("m.jsonl");
    let slash = format!("{}/out.st/", s(tmp.path()));
    refused(&["mlp", "--train-size", "600", "--save", &slash, "--metrics", s(&m), "--data-dir", d], &["cannot save to", "out.st/: the path names a directory (it ends with /"]);
    assert!(!m.exists(), "no metrics file is left behind");
    let limit = 255; // NAME_MAX of the file systems tests run on (ext4, tmpfs, xfs, btrfs)
    let long = tmp.path().join(format!("{}.st", "n".repeat(limit - 8 - 3 + 1)));
    refused(&["mlp", "--train-size", "600", "--save", s(&long), "--data-dir", d], &["its name is 248 bytes long", "limit of 255: choose a name of at most 247 bytes"]);
    // At the limit, it trains and saves.
    let longest = tmp.path().join(format!("{}.st", "n".repeat(limit - 8 - 3)));
    let out = run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&longest), "--data-dir", d]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(Weights::load(&longest).unwrap().state.unwrap().epochs_done, 1);
    assert!(temporaries(tmp.path()).is_empty(), "{:?}", temporaries(tmp.path()));
}

#[test]
fn save_into_a_missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("no/such/dir/convnet.safetensors");
    let err = refused(&["convnet", "--device", "cpu", "--epochs", "1", "--save", s(&target), "--data-dir", s(&repo_data())], &[
        s(&target),
        "does not exist",
    ]);
    assert!(!err.contains("Using"), "{err}");
    assert!(!target.exists());
}

#[test]
fn save_into_an_unwritable_place() {
    // /proc takes no new files, even for root (chmod would not stop root).
    refused(&["convnet", "--device", "cpu", "--epochs", "1", "--save", "/proc/nnmnist.safetensors"], &[
        "/proc/nnmnist.safetensors",
        "cannot create its lock file /proc/.nnmnist.safetensors.lock",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    refused(&["convnet", "--device", "cpu", "--epochs", "1", "--save", s(tmp.path())], &[s(tmp.path()), "it is a directory"]);
}

/// A directory its user cannot write in is refused by name, before any data is read, and
/// nothing is left in it. Root writes anywhere, so where the tests run as root the command
/// runs as nobody, through util-linux's setpriv: that needs the binary and its libtorch
/// reachable by nobody, which scripts/test checks before it runs this test.
#[test]
#[ignore = "needs a user whom a directory's mode binds: scripts/test runs it as that user, or as nobody through setpriv where the tests run as root"]
fn save_into_a_directory_its_user_cannot_write() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = if rustix::process::geteuid().is_root() {
            let mut c = common::command("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(common::bin()).env_remove("RUST_LOG").env_remove("NNMNIST_DATA_DIR");
            c
        } else {
            common::nnmnist()
        };
        let out = output_with_patience(cmd.args(args).env("NO_COLOR", "1"));
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let target = ro.join("x.safetensors");
    assert_eq!(
        run(&["mlp", "--epochs", "1", "--save", s(&target)]),
        (Some(1), format!("error: cannot save to {}: directory {} is not writable: its lock file {}/.x.safetensors.lock cannot be made there (permission denied)\n", target.display(), ro.display(), ro.display()))
    );
    // The metrics log, made there as `>>` would make it, likewise.
    let log = ro.join("m.jsonl");
    assert_eq!(
        run(&["mlp", "--epochs", "1", "--metrics", s(&log)]),
        (Some(1), format!("error: cannot open metrics file {} for appending: directory {} is not writable (permission denied)\n", log.display(), ro.display()))
    );
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
}

/// A directory that cannot be reached is not "missing": behind a symbolic-link loop, or
/// past PATH_MAX.
#[test]
fn a_save_path_that_cannot_be_reached_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let d = s(data.path());
    let looping = tmp.path().join("loop");
    symlink(&looping, &looping).unwrap();
    refused(&["mlp", "--save", s(&looping.join("x.st")), "--data-dir", d], &["cannot reach directory", "Too many levels of symbolic links"]);
    let deep = format!("{}/{}/x.st", s(tmp.path()), ["d"; 2100].join("/"));
    let stderr = refused(&["mlp", "--save", &deep, "--data-dir", d], &["cannot save to"]);
    assert!(!stderr.contains("does not exist"), "{stderr}");
}

// ---------------------------------------------------------------- the lock, and the files beside the target

#[test]
fn a_file_of_a_temporary_name_is_kept_and_a_second_run_on_the_same_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(3200);
    let ck = tmp.path().join("ck.safetensors");
    // A name a temporary file could have, here a user's file: it is not nnmnist's.
    let kept = tmp.path().join(".ck.safetensors.tmp4242");
    std::fs::write(&kept, vec![0u8; 4096]).unwrap();
    // A long run holding the file...
    let mut first = common::nnmnist()
        .args(["mlp", "--train-size", "3200", "--test-size", "100", "--epochs", "100000", "--save", s(&ck), "--data-dir", s(data.path())])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(first.stdout.take().unwrap()));
    assert!(lines.any(|l| l.unwrap().starts_with("Epoch 0:")), "the first run trains");
    assert_eq!(std::fs::read(&kept).unwrap(), vec![0u8; 4096], "a file beside the target is left as it was");
    // ...refuses a second one.
    let err = refused(&["mlp", "--save", s(&ck), "--data-dir", s(data.path())], &[s(&ck), &format!("another nnmnist run (pid {}) is saving to it", first.id())]);
    assert!(err.contains("choose another file"), "{err}");
    first.kill().unwrap();
    first.wait().unwrap();
    // Killed: its lock file stays and holds no lock. Its checkpoint holds an unfinished run,
    // which a new run does not replace: it is pointed to --resume...
    let lock = tmp.path().join(".ck.safetensors.lock");
    assert!(lock.exists(), "a killed run leaves its lock file");
    refused(&["mlp", "--train-size", "600", "--save", s(&ck), "--data-dir", s(data.path())], &[s(&ck), "holds an unfinished mlp run", "continue it with --resume"]);
    // ...which takes the stale lock.
    let state = Weights::load(&ck).unwrap().state.unwrap();
    let more = (state.epochs_done + 1).to_string();
    assert!(run(&["mlp", "--resume", s(&ck), "--epochs", &more, "--data-dir", s(data.path())]).status.success());
    assert!(!lock.exists(), "the lock file is removed when the run ends");
    assert_eq!(std::fs::read(&kept).unwrap(), vec![0u8; 4096], "every run leaves the file beside the target alone");
}

/// The lock is only ever nnmnist's own file: a link or somebody's file at its name is
/// refused, untouched.
#[test]
fn the_lock_never_takes_over_another_file() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let ck = tmp.path().join("q.st");
    symlink(&victim, tmp.path().join(".q.st.lock")).unwrap();
    refused(&["mlp", "--save", s(&ck)], &[".q.st.lock is a symbolic link, not nnmnist's lock file"]);
    std::fs::remove_file(tmp.path().join(".q.st.lock")).unwrap();
    std::fs::write(tmp.path().join(".q.st.lock"), "notes of mine").unwrap();
    refused(&["mlp", "--save", s(&ck)], &["holds something else than an nnmnist lock"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(std::fs::read_to_string(tmp.path().join(".q.st.lock")).unwrap(), "notes of mine");
    // A pid file of the user's (digits), and a hard link to one: neither is written.
    std::fs::write(tmp.path().join(".q.st.lock"), "4242\n").unwrap();
    refused(&["mlp", "--save", s(&ck)], &["holds something else than an nnmnist lock"]);
    assert_eq!(std::fs::read_to_string(tmp.path().join(".q.st.lock")).unwrap(), "4242\n");
    std::fs::remove_file(tmp.path().join(".q.st.lock")).unwrap();
    let pid_file = tmp.path().join("my.pid");
    std::fs::write(&pid_file, "").unwrap();
    std::fs::hard_link(&pid_file, tmp.path().join(".q.st.lock")).unwrap();
    refused(&["mlp", "--save", s(&ck)], &[".q.st.lock has 2 hard links, so it is not nnmnist's lock file"]);
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), "", "the linked file is not written");
    assert!(tmp.path().join(".q.st.lock").exists(), "nor removed");
    // An empty file of the user's: a lock file of nnmnist's is never seen empty.
    std::fs::remove_file(tmp.path().join(".q.st.lock")).unwrap();
    std::fs::write(tmp.path().join(".q.st.lock"), "").unwrap();
    refused(&["mlp", "--save", s(&ck)], &["holds something else than an nnmnist lock"]);
    assert_eq!(std::fs::read(tmp.path().join(".q.st.lock")).unwrap(), b"", "the empty file is left as it was");
    // A save with its lock free leaves nothing beside the target but what was there.
    std::fs::remove_file(tmp.path().join(".q.st.lock")).unwrap();
    let data = common::small_data(300);
    assert!(run(&["mlp", "--train-size", "300", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--data-dir", s(data.path())]).status.success());
    let mut names: Vec<String> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["my.pid", "q.st", "victim.txt"]);
}

#[test]
fn other_files_beside_the_target_are_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("x");
    let (lock_of_other, user_file, stale) = (tmp.path().join(".x.tmp.lock"), tmp.path().join(".x.tmpfoo"), tmp.path().join(".x.tmp77"));
    for f in [&lock_of_other, &user_file, &stale] {
        std::fs::write(f, b"...").unwrap();
    }
    assert!(run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--data-dir", s(data.path())]).status.success());
    for f in [&lock_of_other, &user_file, &stale] {
        assert_eq!(std::fs::read(f).unwrap(), b"...", "{} is left as it was", f.display());
    }
}

/// A save killed between the link of its finished temporary file and the rename leaves
/// `.NAME.XXXXXX`, a complete checkpoint; a user may keep files of such names too (copies of
/// the checkpoint, notes), and a name cannot tell them apart: no run removes any of them,
/// and the next save works beside them.
#[test]
fn files_of_temporary_names_beside_a_save_are_never_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("ck.safetensors");
    let args = ["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--data-dir", s(data.path())];
    assert!(run(&args).status.success());
    let (linked, users) = (tmp.path().join(".ck.safetensors.Ab12Cd"), tmp.path().join(".ck.safetensors.zz99zz"));
    std::fs::copy(&ck, &linked).unwrap();
    std::fs::write(&users, b"notes of mine").unwrap();
    let before = std::fs::read(&linked).unwrap();
    std::fs::remove_file(&ck).unwrap();
    assert!(run(&args).status.success());
    assert_eq!(Weights::load(&ck).unwrap().state.unwrap().epochs_done, 1, "the next save works");
    assert_eq!(std::fs::read(&linked).unwrap(), before, "a complete checkpoint of a temporary name is kept");
    assert_eq!(std::fs::read(&users).unwrap(), b"notes of mine", "a user's file is left alone");
}

/// Copies of the checkpoint and a text file beside it, under names a save's temporary file
/// could have (`.NAME.XXXXXX`, `.NAME.tmpDIGITS`): a save there keeps every one.
#[test]
fn a_save_keeps_the_users_files_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("run.safetensors");
    let args = ["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--data-dir", s(data.path())];
    assert!(run(&args).status.success());
    let checkpoint = std::fs::read(&ck).unwrap();
    let (backup, epoch1, notes) = (tmp.path().join(".run.safetensors.backup"), tmp.path().join(".run.safetensors.epoch1"), tmp.path().join(".run.safetensors.tmp2024"));
    std::fs::write(&backup, &checkpoint).unwrap();
    std::fs::write(&epoch1, &checkpoint).unwrap();
    std::fs::write(&notes, "what I tried in 2024\n").unwrap();
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(std::fs::read(&backup).unwrap(), checkpoint, "the backup survives");
    assert_eq!(std::fs::read(&epoch1).unwrap(), checkpoint, "the epoch-1 copy survives");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "what I tried in 2024\n", "the text file survives");
}

/// A FIFO beside the save target, under a temporary file's name, does not make a save wait
/// (no file is opened before its type is known): the run saves and ends, the FIFO stays. A
/// FIFO at the lock file's name is refused at once, untouched.
#[test]
fn a_fifo_beside_the_target_never_hangs_a_save() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("run.safetensors");
    let args = ["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--data-dir", s(data.path())];
    assert!(run(&args).status.success());
    let fifo = tmp.path().join(".run.safetensors.abcdef");
    mkfifo(&fifo);
    let started = Instant::now();
    let out = run(&args);
    eprintln!("a save beside a FIFO ended in {:?}", started.elapsed());
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(Weights::load(&ck).unwrap().state.unwrap().epochs_done, 1);
    assert!(is_fifo(&fifo), "the FIFO is left alone");
    let lock = tmp.path().join(".run.safetensors.lock");
    mkfifo(&lock);
    refused(&args, &[s(&lock), "is a FIFO, not nnmnist's lock file"]);
    assert!(is_fifo(&lock), "the FIFO at the lock's name is left alone");
}
