# Keeps well-formed rows, lower-cases names, drops exact duplicates.
# What it dropped goes to stderr, one count per reason.
NR == 1 { print; next }
{
    $0 = tolower($0)
    if (NF != 6 || $3 == "" || $4 == "") { dropped["missing field"]++; next }
    if ($5 !~ /^[0-9]+$/) { dropped["units not a number"]++; next }
    if (seen[$0]++) { dropped["duplicate"]++; next }
    print
    kept++
}
END {
    printf "kept %d rows\n", kept > "/dev/stderr"
    for (why in dropped) printf "dropped %d rows: %s\n", dropped[why], why > "/dev/stderr"
}
