"""What a new password must be (issue #20 section 5), said once as RULE.

At least 12 characters; not one of the commonly used passwords below, alone or with digits
and symbols around it or letters swapped for look-alike digits (``P@ssw0rd2024!`` is
``password``), nor one repeated (``qwertyqwerty``); not a run of the keyboard or of the
alphabet or digits; more than 3 different characters; and not the account's e-mail address
nor the part before its ``@``, alone, repeated or with digits and symbols around it. Login
checks nothing of this: it only compares with the stored hash.

COMMON: the base words of the most common passwords in the published breach lists (the
NCSC's and SecLists' top of the 10 million list), lower case; length alone already refuses
most of those lists' entries.
"""

from __future__ import annotations

import string

__all__ = ["MIN_LENGTH", "RULE", "problem"]

MIN_LENGTH = 12
RULE = (
    f"at least {MIN_LENGTH} characters, not a common password (not even with digits or "
    "symbols around it), not a keyboard or alphabet run, and not the e-mail address or "
    "its part before '@'"
)

# a list, typed as prose
_COMMON_TEXT = """
123456 password 12345678 qwerty 123456789 12345 1234 111111 1234567 dragon 123123 baseball
abc123 football monkey letmein 696969 shadow master 666666 qwertyuiop 123321 mustang
1234567890 michael 654321 superman 1qaz2wsx 7777777 121212 000000 qazwsx 123qwe killer
trustno1 jordan jennifer zxcvbnm asdfgh hunter buster soccer harley batman andrew tigger
sunshine iloveyou 2000 charlie robert thomas hockey ranger daniel starwars klaster 112233
george computer michelle jessica pepper 1111 zxcvbn 555555 11111111 131313 freedom 777777
pass maggie 159753 aaaaaa ginger princess joshua cheese amanda summer love ashley nicole
chelsea biteme matthew access yankees 987654321 dallas austin thunder taylor matrix
mobilemail mom monitor monitoring montana moon moscow william corvette hello martin heather
secret merlin diamond 1234qwer gfhjkm hammer silver 222222 88888888 anthony justin test
bailey q1w2e3r4t5 patrick internet scooter orange 11111 golfer cookie richard samantha
bigdog guitar jackson whatever mickey chicken sparky snoopy maverick phoenix camaro peanut
morgan welcome falcon cowboy ferrari samsung andrea smokey steelers joseph mercedes dakota
arsenal eagles melissa boomer booboo spider nascar monster tigers yellow xxxxxx 123123123
gateway marina diablo bulldog qwer1234 compaq purple banana junior hannah 123654 porsche
lakers iceman money cowboys 987654 london tennis 999999 ncc1701 coffee scooby 0000 miller
boston q1w2e3r4 brandon yamaha chester mother forever johnny edward 333333 oliver redsox
player nikita knight fender barney midnight please brandy chicago badboy slayer rangers
charles angel flower bigdaddy rabbit wizard jasper enter rachel chris steven winner adidas
victoria natasha 1q2w3e4r jasmine winter prince marine ghbdtn fishing cocacola casper james
232323 raiders 888888 marlboro gandalf asdfasdf crystal 87654321 12344321 golden 8675309
panther lauren angela spanky thx1138 angels madison winston shannon mike toyota jordan23
canada sophie apples tiger razz 123abc pokemon qazxsw 55555 qwaszx muffin johnson murphy
cooper jonathan liverpoo david danielle 159357 jackie 1990 123456a 789456 turtle abcd1234
scorpion qazwsxedc 101010 butter carlos password1 dennis slipknot qwerty123 booger asdf 1991
black startrek 12341234 cameron newyork rainbow nathan john 1992 rocket viking redskins
asdfghjkl 1212 sierra peaches gemini doctor wilson sandra helpme qwertyui victor florida
dolphin pookie captain tucker blue liverpool theman bandit dolphins maddog packers jaguar
lovers nicholas united tiffany maxwell zzzzzz nirvana jeremy stupid monica elephant giants
hotdog rosebud success debbie mountain 444444 xxxxxxxx warrior 1q2w3e4r5t q1w2e3 123456q
albert metallic lucky azerty 7777 alex bond007 alexis 1111111 samson 5150 willie scorpio
bonnie gators benjamin voodoo driver dexter 2112 jason calvin freddy 212121 creative 12345a
sydney rush2112 1989 asdfghjk red123 bubba 4815162342 passw0rd trouble gunner happy gordon
legend jessie stella qwert eminem arthur apple nissan bear america 1qazxsw2 nothing parker
4444 rebecca qweqwe garfield 01012011 beavis 69696969 jack asdasd december 2222 102030
252525 11223344 magic apollo skippy 315475 girls kitten golf copper braves shelby godzilla
beaver fred tomcat august buddy airborne 1993 1988 lifehack qqqqqq brooklyn animal platinum
phantom online xavier darkness blink182 power fish green 789456123 voyager police travis
12qwaszx heaven snowball lover abcdef 00000 pakistan 007007 walter playboy blazer cricket
sniper donkey willow loveme saturn therock redwings bigboy pumpkin trinity williams nintendo
digital destiny topgun runner marvin guinness chance bubbles testing fire november minecraft
asdf1234 lasvegas sergey broncos cartman private celtic birdie little cassie babygirl donald
beatles 1313 family 12121212 school louise gabriel eclipse fluffy 147258369 lol123 explorer
beer nelson flyers spencer scott lovely gibson doggie cherry andrey snickers buffalo pantera
metallica member carter qwertyu peter alexande steve bronco paradise goober 5555 samuel
montana1 mexico dreams michigan carolina yankee friends magnum surfer maximus genius cool
vampire lacrosse asd123 aaaa christin kimberly speedy sharon carmen 111222 kristina sammy
racing ou812 sabrina horses 0987654321 qwerty1 baby stalker enigma 147147 star poohbear
147258 simple 12345q marcus brian 1987 qweasdzxc drowssap hahaha caroline barbara dave viper
drummer action einstein genesis hello1 scotty friend forest 010203 hotrod google vanessa
spitfire badger maryjane friday alaska 1232323q tester jester jake champion billy 147852
rock hawaii badass chevy 420420 walker stephen eagle1 bill 1986 october gregory svetlana
pamela 1984 music shorty westside stanley diesel courtney 242424 kevin hitman mark
12345qwert reddog frank qwe123 popcorn patricia aaaaaaaa 1969 teresa mozart buddha anderson
paul melanie abcdefg security lucky1 lizard denise 3333 a12345 123789 ruslan stargate
simpsons scarface eagle 123456789a thumper olivia naruto 1234554321 general cherokee a123456
vincent 1qaz2wsx3edc zaq12wsx admin administrator changeme default guest root toor passpass
letmein123 welcome1 iloveyou1 qwertyuiopasdfghjkl zaq1xsw2cde3 zaq12wsxcde3 1q2w3e4r5t6y
qazwsxedcrfv abcdefghijkl
"""
COMMON = frozenset(_COMMON_TEXT.split())

_KEYBOARD = (
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "1234567890",
    "qazwsxedcrfvtgbyhnujmikolp",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "abcdefghijklmnopqrstuvwxyz",
)
_LEET = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "@": "a",
        "$": "s",
        "!": "i",
        "|": "l",
        "+": "t",
    }
)
_AROUND = string.digits + string.punctuation + string.whitespace


def _is_run(text: str) -> bool:
    """A stretch of one keyboard row or sequence, forwards or backwards (qwertyuiopas...)."""
    return len(text) >= 4 and any(text in row * 2 or text in row[::-1] * 2 for row in _KEYBOARD)


def _is_repeat(text: str) -> str | None:
    """The unit a string repeats (abcabcabc -> abc), or None."""
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return text[:size]
    return None


def problem(password: str, email: str) -> str | None:
    """Why password breaks RULE for the account of email, or None when it does not."""
    if len(password) < MIN_LENGTH:
        return f"is {len(password)} characters; at least {MIN_LENGTH} are needed"
    lower = password.lower()
    if len(set(lower)) <= 3:
        return "has 3 different characters or fewer"
    core = lower.strip(_AROUND)
    for candidate in {lower, core, lower.translate(_LEET).strip(_AROUND), core.translate(_LEET)}:
        unit = _is_repeat(candidate) or candidate
        if unit in COMMON or candidate in COMMON:
            return "is a commonly used password"
        if _is_run(candidate.replace(" ", "")) or _is_run(unit):
            return "is a run of keys or letters"
    address = email.lower()
    for own in (address, address.partition("@")[0]):
        if own and not lower.replace(own, "").strip(_AROUND):
            return "is the e-mail address or its part before '@' (with digits or symbols)"
    return None
