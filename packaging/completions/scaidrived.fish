complete -c scaidrived -s c -l config -d 'Configuration file (TOML); see packaging/scaidrived.example.toml' -r -F
complete -c scaidrived -l folder -d 'Mirror this folder into SCAIDRIVE_SHARE_ID (no config file needed)' -r -F
complete -c scaidrived -l demo -d 'Start the bundled local ScaiDrive server, mirror DIR (a sample folder if omitted), print a password-protected share link after the first pass, keep mirroring' -r -F
complete -c scaidrived -l state-dir -d 'State directory (overrides daemon.state_dir and $STATE_DIRECTORY)' -r -F
complete -c scaidrived -l log-format -d 'Log format: human or json' -r -f -a "human\t''
json\t''"
complete -c scaidrived -l once -d 'Run one full pass, wait until everything is uploaded, print a summary and exit'
complete -c scaidrived -s h -l help -d 'Print help (see more with \'--help\')'
complete -c scaidrived -s V -l version -d 'Print version'
