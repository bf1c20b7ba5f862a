# What sguild and the Sguil client make of a report file and a global query file, so
# that tests run the SQL a Sguil user would run. Written for this project from how
# Sguil 1.0.0 behaves (bammv/sguil: server/lib/SguildUtils.tcl LoadReportQueries and
# LoadGlobalQueries, server/lib/SguildReportBuilder.tcl "BUILDER", client/lib/report.tcl
# PHBReport, client/lib/stdquery.tcl and client/lib/qrylib.tcl DBQueryRequest):
#
# - sguild reads a report file line by line, drops lines starting with "#" and empty
#   ones, and joins the rest with nothing between them; the client cuts that string
#   into elements with a non-greedy "||" pattern; sguild finds an element by its name
#   with its own pattern, refuses SQL not starting with SELECT, and replaces the macros.
# - sguild keeps each non-comment line of the query file as one global query; the
#   client splits it at "||" and puts its WHERE after its own SELECT, joining a table
#   only when "<table>." follows white space in the WHERE.
#
# Usage:
#   tclsh sguil_menu.tcl reports FILE START END NET...
#   tclsh sguil_menu.tcl queries FILE LIMIT
# Prints one record per element, its fields separated by \x1f, records ended by \x1e:
#   reports: name, description, type, number of fields, the SQL sguild runs (or
#            "REFUSED: <why>")
#   queries: name, comment, type, the SQL the client sends

proc read_lines {file} {
    set f [open $file r]
    set lines [split [read $f] "\n"]
    close $f
    return $lines
}

proc report_string {file} {
    set all ""
    foreach line [read_lines $file] {
        if {![regexp {^#} $line] && ![regexp {^$} $line]} {
            append all $line
        }
    }
    return $all
}

# The client's list of elements.
proc client_elements {all} {
    set out {}
    set scan 0
    while {[regexp -start $scan {(.*?)\|\|(.*?)\|\|(.*?)\|\|(.*?)\|\|(.*?)\|\|} $all \
            -> name desc type sql fields]} {
        lappend out [list $name $desc $type $sql $fields]
        regexp -indices -start $scan {.*?\|\|.*?\|\|.*?\|\|.*?\|\|.*?\|(\|)} $all -> end
        set scan [expr {[lindex $end 1] + 1}]
    }
    return $out
}

# The SQL sguild runs for the element the client asked for by name.
proc server_sql {all want start end nets} {
    set scan 0
    set sql ""
    while 1 {
        if {![regexp -start $scan {(.*?)\|\|.*?\|\|.*?\|\|(.*?)\|\|.*?\|\|} $all -> name sql]} {
            return "REFUSED: no element named $want"
        }
        if {$name eq $want} break
        regexp -indices -start $scan {.*?\|\|.*?\|\|.*?\|\|.*?\|\|.*?\|(\|)} $all -> end_at
        set scan [expr {[lindex $end_at 1] + 1}]
    }
    if {![regexp -nocase {^select} $sql]} {
        return "REFUSED: only SELECT queries are valid"
    }
    regsub -all {%%STARTTIME%%} $sql "'$start'" sql
    regsub -all {%%ENDTIME%%} $sql "'$end'" sql
    set macro "( sensor.net_name = '[lindex $nets 0]' "
    foreach n [lrange $nets 1 end] {
        append macro " OR sensor.net_name = '$n' "
    }
    append macro " )"
    regsub -all {%%SENSORS%%} $sql $macro sql
    return $sql
}

proc event_query {where limit} {
    set columns "event.status, event.priority, sensor.hostname, \
     event.timestamp as datetime, event.sid, event.cid, event.signature,\
     INET_NTOA(event.src_ip), INET_NTOA(event.dst_ip), event.ip_proto,\
     event.src_port, event.dst_port, event.signature_gen, event.signature_id, \
     event.signature_rev"
    set joins "INNER JOIN sensor ON event.sid=sensor.sid"
    if {[regexp {\s+user_info\.} $where]} {
        append joins " INNER JOIN user_info ON user_info.uid=event.last_uid"
    }
    foreach t {tcphdr udphdr icmphdr data} {
        if {[regexp "\\s+${t}\\." $where]} {
            append joins " INNER JOIN $t ON event.sid=${t}.sid AND event.cid=${t}.cid"
        }
    }
    return "SELECT $columns FROM event IGNORE INDEX (event_p_key, sid_time) $joins $where\
        ORDER BY datetime, src_port ASC LIMIT $limit"
}

fconfigure stdout -translation binary -encoding utf-8
set mode [lindex $argv 0]
set file [lindex $argv 1]
switch -- $mode {
    reports {
        lassign [lrange $argv 2 3] start end
        set nets [lrange $argv 4 end]
        set all [report_string $file]
        foreach e [client_elements $all] {
            lassign $e name desc type sql fields
            if {$type eq "query"} {
                set run [server_sql $all $name $start $end $nets]
            } else {
                set run ""
            }
            puts -nonewline "$name\x1f$desc\x1f$type\x1f$fields\x1f$run\x1e"
        }
    }
    queries {
        set limit [lindex $argv 2]
        foreach line [read_lines $file] {
            if {[regexp {^#} $line] || [regexp {^$} $line]} continue
            if {[regexp {^(.*)\|\|(.*)\|\|(.*)\|\|(.*)$} $line -> name comment where type]} {
                puts -nonewline "$name\x1f$comment\x1f$type\x1f[event_query $where $limit]\x1e"
            } else {
                puts -nonewline "$line\x1f\x1f\x1fREFUSED: not name||comment||where||type\x1e"
            }
        }
    }
    default {
        puts stderr "usage: sguil_menu.tcl reports FILE START END NET... | queries FILE LIMIT"
        exit 2
    }
}
