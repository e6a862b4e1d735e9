# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_scaidrivectl_global_optspecs
    string join \n socket= c/config= h/help V/version
end

function __fish_scaidrivectl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_scaidrivectl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_scaidrivectl_using_subcommand
    set -l cmd (__fish_scaidrivectl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -s V -l version -d 'Print version'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "status" -d 'Show each mirror\'s state, progress and failures'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "wait" -d 'Wait until every mirror is idle and in sync'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "pause" -d 'Stop uploading (events are still collected)'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "resume" -d 'Resume a paused mirror'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "rescan" -d 'Run a full scan now'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "retry" -d 'Retry failed items now'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "failures" -d 'List failed items and why they failed'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "link" -d 'Create (or show) a sharing link for a mirrored file or folder and print its URL'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "links" -d 'List sharing links with their status and expiry (refreshed from the server)'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "unlink" -d 'Revoke a sharing link: by link id, or every live link of a path'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "verify" -d 'Walk the remote and report drift from what the mirror believes it holds. Exit 0 in sync, 4 drift found'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "limit" -d 'Show the upload bandwidth limit, or set it until the next reload or restart: a rate ("2MiB/s", "500KiB/s"), "off", or a weekly timetable in local time ("Mon-Fri 08:00-18:00 1MiB/s, 20MiB/s", the last entry the default)'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "events" -d 'Stream what the daemon does, one line per event (uploaded, new_version, moved, deleted, drift_repaired, failed, paused, resumed, link_created, in_sync), until it stops. A reader too slow to keep up gets a "dropped N events" line'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "metrics" -d 'Print the Prometheus metrics'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "config" -d 'Check a configuration file without starting anything'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "restore" -d 'Download a mirror\'s remote tree, a subtree or a file as it was at a moment (no daemon needed: reads the configuration and the token and talks to ScaiDrive)'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "versions" -d 'List the remote versions of a mirrored file (number, size, time, who)'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "service" -d 'Run scaidrived as a per-user service: a systemd user unit on Linux, a launchd agent on macOS'
complete -c scaidrivectl -n "__fish_scaidrivectl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand status" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand status" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand status" -l json
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand status" -l watch -d 'Refresh every second until interrupted'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand status" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand wait" -l timeout -d 'Give up after this many seconds (exit 2)' -r
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand wait" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand wait" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand wait" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand pause" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand pause" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand pause" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand resume" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand resume" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand resume" -l allow-deletes -d 'Let the next pass execute the deletes that paused the mirror, and forget the mount points below the root that are no longer mounted (their folders are then mirrored as they are)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand resume" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand rescan" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand rescan" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand rescan" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand retry" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand retry" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand retry" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand failures" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand failures" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand failures" -l json
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand failures" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -l type -d 'What recipients may do' -r -f -a "view\t''
download\t''
upload\t''"
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -l password-file -d 'Protect the link with the password in this file (its first line)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -l expires-in-days -d 'The link expires this many days after it is created' -r
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -l expires-at -d 'The link expires at this RFC 3339 time (e.g. 2030-01-31T12:00:00Z)' -r
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -l max-downloads -d 'The link stops working after this many downloads' -r
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -l name -d 'Display name shown to recipients' -r
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -l wait -d 'Seconds to wait for a new path to reach the remote' -r
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -l password-stdin -d 'Protect the link with a password read from standard input (its first line)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -l generate-password -d 'Protect the link with a new random password, printed once'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -l regenerate -d 'Make a new URL (and revoke the old one) even if the link is still active'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -l json
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand link" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand links" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand links" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand links" -l json
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand links" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand unlink" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand unlink" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand unlink" -l json
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand unlink" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand verify" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand verify" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand verify" -l checksums -d 'Also compare every file\'s SHA-256 (one request per file)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand verify" -l repair -d 'Forget drifted items so the next pass uploads them again'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand verify" -l json
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand verify" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand limit" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand limit" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand limit" -l json
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand limit" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand events" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand events" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand events" -l json -d 'Newline-delimited JSON, as GET /v1/events sends it'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand events" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand metrics" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand metrics" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand metrics" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand config; and not __fish_seen_subcommand_from check help" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand config; and not __fish_seen_subcommand_from check help" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand config; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Load and validate a configuration file (default: --config)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand config; and __fish_seen_subcommand_from check" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand config; and __fish_seen_subcommand_from check" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Load and validate a configuration file (default: --config)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand restore" -l to -d 'Where to put it: a directory that is empty or absent and not inside any mirror (with --version: the file to create)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand restore" -l as-of -d 'The moment: RFC 3339 (2026-12-01T09:30:00Z) or relative ("2 days ago"); default now' -r
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand restore" -l version -d 'Fetch this version of the file at PATH (see `versions`) into the file --to' -r
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand restore" -l mirror -d 'The mirror (its name in the configuration); needed when several are configured and PATH does not say' -r
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand restore" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand restore" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand restore" -l dry-run -d 'Print what would be restored and the units it would cost; download nothing'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand restore" -l from-trash -d 'Also restore files whose content is only in ScaiDrive\'s trash: each is taken out of the trash where it was for the download and put back afterwards (4 more units per item; the share\'s change log shows the round trip)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand restore" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand versions" -l mirror -r
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand versions" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand versions" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand versions" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and not __fish_seen_subcommand_from install uninstall help" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and not __fish_seen_subcommand_from install uninstall help" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and not __fish_seen_subcommand_from install uninstall help" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and not __fish_seen_subcommand_from install uninstall help" -f -a "install" -d 'Install and start scaidrived as a per-user service (systemd user unit on Linux, launchd agent on macOS) using --config (default ~/.config/scaidrive/scaidrived.toml)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and not __fish_seen_subcommand_from install uninstall help" -f -a "uninstall" -d 'Stop, disable and remove the per-user service (configuration and state stay)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and not __fish_seen_subcommand_from install uninstall help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and __fish_seen_subcommand_from install" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and __fish_seen_subcommand_from install" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and __fish_seen_subcommand_from install" -l dry-run -d 'Print what would be written and run, change nothing'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l socket -d 'The daemon\'s control socket (default: from the configuration\'s runtime directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and __fish_seen_subcommand_from uninstall" -s c -l config -d 'The daemon\'s configuration file (to find its socket and state directory)' -r -F
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l dry-run -d 'Print what would be removed and run, change nothing'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and __fish_seen_subcommand_from uninstall" -s h -l help -d 'Print help'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "install" -d 'Install and start scaidrived as a per-user service (systemd user unit on Linux, launchd agent on macOS) using --config (default ~/.config/scaidrive/scaidrived.toml)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "uninstall" -d 'Stop, disable and remove the per-user service (configuration and state stay)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "status" -d 'Show each mirror\'s state, progress and failures'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "wait" -d 'Wait until every mirror is idle and in sync'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "pause" -d 'Stop uploading (events are still collected)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "resume" -d 'Resume a paused mirror'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "rescan" -d 'Run a full scan now'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "retry" -d 'Retry failed items now'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "failures" -d 'List failed items and why they failed'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "link" -d 'Create (or show) a sharing link for a mirrored file or folder and print its URL'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "links" -d 'List sharing links with their status and expiry (refreshed from the server)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "unlink" -d 'Revoke a sharing link: by link id, or every live link of a path'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "verify" -d 'Walk the remote and report drift from what the mirror believes it holds. Exit 0 in sync, 4 drift found'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "limit" -d 'Show the upload bandwidth limit, or set it until the next reload or restart: a rate ("2MiB/s", "500KiB/s"), "off", or a weekly timetable in local time ("Mon-Fri 08:00-18:00 1MiB/s, 20MiB/s", the last entry the default)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "events" -d 'Stream what the daemon does, one line per event (uploaded, new_version, moved, deleted, drift_repaired, failed, paused, resumed, link_created, in_sync), until it stops. A reader too slow to keep up gets a "dropped N events" line'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "metrics" -d 'Print the Prometheus metrics'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "config" -d 'Check a configuration file without starting anything'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "restore" -d 'Download a mirror\'s remote tree, a subtree or a file as it was at a moment (no daemon needed: reads the configuration and the token and talks to ScaiDrive)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "versions" -d 'List the remote versions of a mirrored file (number, size, time, who)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "service" -d 'Run scaidrived as a per-user service: a systemd user unit on Linux, a launchd agent on macOS'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and not __fish_seen_subcommand_from status wait pause resume rescan retry failures link links unlink verify limit events metrics config restore versions service help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Load and validate a configuration file (default: --config)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "install" -d 'Install and start scaidrived as a per-user service (systemd user unit on Linux, launchd agent on macOS) using --config (default ~/.config/scaidrive/scaidrived.toml)'
complete -c scaidrivectl -n "__fish_scaidrivectl_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "uninstall" -d 'Stop, disable and remove the per-user service (configuration and state stay)'
