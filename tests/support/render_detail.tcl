# Renders event details the way Sguil's analyst console does, and reports what it shows.
#
#   wish render_detail.tcl DIR [SCREENSHOT_NAME]
#
# For every DIR/NAME.hex (a detail as sguild stores it in data.data_payload: uppercase
# hex), in name order: decode it one byte per character as the client's hex2string does
# (client/lib/SguilUtil.tcl), render it in an iwidgets::scrolledhtml made with sguil.tk's
# options for its "Display Detail" pane, as InsertGenericDetail does
# (client/lib/guilib.tcl), then write the text the widget shows to DIR/NAME.txt (UTF-8)
# and print on stdout, before and after:
#
#   RENDERING NAME
#   RENDERED NAME MS LINKS WINDOWS IMAGES
#
# MS is the render time in milliseconds; LINKS the number of link tags (href*) the
# widget made; WINDOWS and IMAGES what it embedded. A render that does not return prints
# nothing more: the caller's watchdog names the detail from the RENDERING line. With SCREENSHOT_NAME, that detail is
# rendered last and left on screen, and "SHOWN NAME" is printed for the caller to take a
# picture; the script then waits for its stdin to close.
package require Iwidgets

# The client opens links in the analyst's browser; here a click is only counted.
proc OpenHREF {link} {
    puts "LINK [string length $link]"
    flush stdout
}

# As the client: every two hex digits become one character.
proc hex2string {h} {
    set s {}
    set n [string length $h]
    for {set i 1} {$i < $n} {incr i 2} {
        append s [format %c [expr 0x[string range $h [expr {$i - 1}] $i]]]
    }
    return $s
}

set dir [lindex $argv 0]
set shot [lindex $argv 1]

wm geometry . 900x700
set detail [iwidgets::scrolledhtml .genericText \
    -relief flat \
    -hscrollmode none \
    -visibleitems 10x2 \
    -sbwidth 10 \
    -vscrollmode dynamic \
    -update 0 \
    -linkcommand OpenHREF \
]
pack $detail -side bottom -fill both -expand true
update

set text [$detail component text]
set files [lsort [glob -nocomplain -directory $dir *.hex]]
if {$shot ne ""} {
    set chosen [file join $dir $shot.hex]
    set files [concat [lsearch -all -inline -not -exact $files $chosen] [list $chosen]]
}
foreach f $files {
    set name [file rootname [file tail $f]]
    set fh [open $f r]
    set hex [string trim [read $fh]]
    close $fh
    set html [hex2string $hex]
    puts "RENDERING $name"
    flush stdout
    set t0 [clock microseconds]
    $detail render $html
    set ms [expr {([clock microseconds] - $t0) / 1000.0}]
    set links [llength [lsearch -all -glob [$text tag names] href*]]
    set windows [llength [$text window names]]
    set images [llength [$text image names]]
    set out [open [file join $dir $name.txt] w]
    fconfigure $out -encoding utf-8 -translation lf
    puts -nonewline $out [$text get 1.0 end]
    close $out
    puts "RENDERED $name $ms $links $windows $images"
    flush stdout
}
if {$shot ne ""} {
    update
    puts "SHOWN $shot"
    flush stdout
    gets stdin
}
exit 0
