"""Opt-in (``--photos debian``): natural photographs, 2.5K–5K px, from three pinned Debian
wallpaper packages, fetched with ``apt-get download`` (sha256 of each ``.deb`` and of each
photograph pinned here) and animated like the other stills.

Only photographs are taken (illustrations, renders and abstract art are skipped; chosen by eye
from contact sheets of every image of at least 2.5K px in the packages), one file per wallpaper
(the largest). Licences per file, from the packages' ``/usr/share/doc/<pkg>/copyright`` (and,
for Plasma, each wallpaper's ``metadata.json``). Opt-in because it needs a Debian archive: the
default corpus rebuilds from PyPI alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath

from stvsr.data.sources.base import Options, Source, Still
from stvsr.data.sources.photos import read_still
from stvsr.data.sources.pinned import Member, Package, fetch_members

__all__ = ["DEBIAN_PHOTOS", "LOMIRI", "MATE", "PLASMA", "DebianPhotosSource", "still_name"]

LOMIRI = Package("debian", "lomiri-wallpapers-16.04=20.04.0-2",
                 "lomiri-wallpapers-16.04_20.04.0-2_all.deb",
                 "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab")
MATE = Package("debian", "mate-backgrounds=1.26.0-1", "mate-backgrounds_1.26.0-1_all.deb",
               "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04")
PLASMA = Package("debian", "plasma-workspace-wallpapers=4:5.27.5-2",
                 "plasma-workspace-wallpapers_4%3a5.27.5-2_all.deb",
                 "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b")

# (package, member, sha256 of the file, "author year, licence")
DEBIAN_PHOTOS: tuple[tuple[Package, str, str, str], ...] = (
    (LOMIRI, "./usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg",
     "bd86b081f9975e2b83527f71e49b9271a8ab40885428395969d9f7d834d7f050",
     "Sander Klootwijk 2018, CC-BY-SA-4.0"),
    (LOMIRI, "./usr/share/backgrounds/Dragonfly_by_Bolly.jpg",
     "af5af17841009732def24b09bb1e669a1b09d2b4bdeee7812c371101c30d2bb3",
     '"Bolly" 2018, CC-BY-SA-4.0'),
    (LOMIRI, "./usr/share/backgrounds/Picture_0B_by_freespace.jpg",
     "c8c0ab18e48d9e0419fe42881112137f3afafc27dfddc29ec3a6d54c56d225ad",
     'Trevor "Freespace" 2018, CC-BY-4.0'),
    (LOMIRI, "./usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg",
     "d2e96e6d4da40dd804b3d0ce295e94de04a2d7d9b6785d42cd9d92ba58bced74",
     "Jakub Mede 2018, CC-BY-4.0"),
    (LOMIRI, "./usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg",
     "66268e7b48f8854d36a28765fac6e23ec1aee251daa6da1f64715f201020ad36",
     "Aitzol Berasategi 2018, CC-BY-4.0"),
    (LOMIRI, "./usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg",
     "cc40e313c74e421edffe3403def413c16878ce14661cce7ec5915baeab35538d",
     "Aitzol Berasategi 2018, CC-BY-4.0"),
    (LOMIRI, "./usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg",
     "4c119350ead80201fe256850c3d316309ddfb4bdf10b235ce982dcde0c667c05",
     "Aitzol Berasategi 2018, CC-BY-4.0"),
    (LOMIRI, "./usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg",
     "414d0072b2f6f2c555deafeaef6e45c4fed6fa9ad26eba6560ca8803959cf97a",
     "Aitzol Berasategi 2018, CC-BY-4.0"),
    (LOMIRI, "./usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg",
     "a5634d1ab5e41a3568e92d4a894a500c92b891f9ff734e50bd224d6e185a605f",
     "Clemens Engelhardt 2018, CC0-1.0"),
    (LOMIRI, "./usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg",
     "474dab6a4b9f94dc76c29dfe30e9f5db4af0fd2e33fe5d695f8152b371efca18",
     "Aitzol Berasategi 2018, CC-BY-4.0"),
    (MATE, "./usr/share/backgrounds/mate/nature/Aqua.jpg",
     "5c30118205982da441bf7e6a1ada636a8a0be879408140b3148280c665ed6bce",
     "Charles Barbin 2008, GPL-2+"),
    (MATE, "./usr/share/backgrounds/mate/nature/Garden.jpg",
     "d3095ee09d425ef23d27155412136cf14fc3c9af76ca58b452f55e23da324e78",
     "Charles Barbin 2008, GPL-2+"),
    (MATE, "./usr/share/backgrounds/mate/nature/LadyBird.jpg",
     "e35a9a4126ef969c90b29c038058c5a575a20eadd84106a37bf1fa9931e7b61d",
     "Charles Barbin 2008, GPL-2+"),
    (MATE, "./usr/share/backgrounds/mate/nature/TwoWings.jpg",
     "665e5abf8a5399070a91a9a8e455fe071e5b61697ff78fdeda4e9843ef545aeb",
     "Charles Barbin, Hylke Bons 2008, GPL-2+"),
    (MATE, "./usr/share/backgrounds/mate/nature/Wood.jpg",
     "19c78500ac00a622e19907ab9cc7d06d46fe08c4a6142759a84195696150ec07",
     "Jean-François Fortin Tam 2008, GPL-2+"),
    (MATE, "./usr/share/backgrounds/mate/nature/YellowFlower.jpg",
     "254da96256acb7add685679775a04d1e4a5bc8cd13e5a5a3d61351ce198a5306",
     "Charles Barbin 2008, GPL-2+"),
    (PLASMA, "./usr/share/wallpapers/BytheWater/contents/images/2560x1600.jpg",
     "c272434ef39f2abf1ed48a15a8910088020f3165329a5092f3940ec9464bc05f",
     "Maciej Wiklo, LGPL-3 (metadata.json); package GPL-2+"),
    (PLASMA, "./usr/share/wallpapers/ColdRipple/contents/images/2560x1600.jpg",
     "05bef6722fc0ed81292cceb3ed026c38d17e510f3c84be7d68610c2b1a723c3f",
     "Risto Saukonpää, LGPL-3 (metadata.json); package GPL-2+"),
    (PLASMA, "./usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg",
     "6e0f3a72feb5a4a9fec191b77e34874c3c69e2d93040deb3f07773e73385023d",
     "Dmitri Popov, LGPL-3 (metadata.json); package GPL-2+"),
    (PLASMA, "./usr/share/wallpapers/DarkestHour/contents/images/2560x1600.jpg",
     "8e3703fae3a3c217b1fc2b399b706cd3720584268d071ba153e4809daa55f1ce",
     "Risto Saukonpää, LGPL-3 (metadata.json); package GPL-2+"),
    (PLASMA, "./usr/share/wallpapers/EveningGlow/contents/images/2560x1600.jpg",
     "586682dcb362b9f620068f10138f87d0d3649939aef238adc5807cb951976a7a",
     "Ian Hex, LGPL-3 (metadata.json); package GPL-2+"),
    (PLASMA, "./usr/share/wallpapers/FallenLeaf/contents/images/2560x1600.jpg",
     "95603a6560c7e8d50e0e03b3f4adbe39c5258c72528e74e4ecaea1daf4e499de",
     "Martin Klapetek, LGPL-3 (metadata.json); package GPL-2+"),
    (PLASMA, "./usr/share/wallpapers/Grey/contents/images/2560x1600.jpg",
     "88c31d8944b7e6935d1b9a296654c692f0772cb512491713eb30a972a604c0ed",
     "Sigi Sagi, LGPL-3 (metadata.json); package GPL-2+"),
    (PLASMA, "./usr/share/wallpapers/Kite/contents/images/2560x1600.jpg",
     "bdca288ce296a981e80659c021cf707caddc702c0c8d4247e60bd618476d47f8",
     "Risto Saukonpää, LGPL-3 (metadata.json); package GPL-2+"),
    (PLASMA, "./usr/share/wallpapers/OneStandsOut/contents/images/2560x1600.jpg",
     "cb507baf1dafdcae362264f3aba9483ed4be5f6c9fdd770f0ec0920c6d9e80fd",
     "Risto Saukonpää, LGPL-3 (metadata.json); package GPL-2+"),
    (PLASMA, "./usr/share/wallpapers/Path/contents/images/2560x1600.jpg",
     "7477457d7f17b736259f1b021864778ad4ba802cf3214e6728181ff29126bba8",
     "Risto Saukonpää, LGPL-3 (metadata.json); package GPL-2+"),
    (PLASMA, "./usr/share/wallpapers/summer_1am/contents/images/2560x1600.jpg",
     "c868b50789591dd42910153c768053f1ba0a98cb36bbfc2b7a96a1045d0477f8",
     "Risto Saukonpää, LGPL-3 (metadata.json); package GPL-2+"),
)


def still_name(member: str) -> str:
    p = PurePosixPath(member)
    stem = p.parts[-4] if "contents" in p.parts else p.stem  # Plasma: the wallpaper's folder
    return f"photo_debian_{stem}"


class DebianPhotosSource(Source):
    name = "debian"
    title = f"{len(DEBIAN_PHOTOS)} natural photographs from Debian wallpaper packages (opt-in)"
    licence = "per file (CC-BY-4.0, CC-BY-SA-4.0, CC0-1.0, GPL-2+, LGPL-3), see DEBIAN_PHOTOS"
    pinned = (LOMIRI.requirement, MATE.requirement, PLASMA.requirement)

    def stills(self, opts: Options) -> Iterator[Still]:
        members = [Member(pkg, (path,), sha) for pkg, path, sha, _ in DEBIAN_PHOTOS]
        paths = fetch_members(members, quiet=opts.quiet)
        for (pkg, path, sha, lic), local in zip(DEBIAN_PHOTOS, paths):
            licence = f"{lic}; Debian {pkg.requirement}, {path[1:]}"
            self.records.append({"name": path, "package": pkg.requirement, "sha256": sha,
                                 "license": lic})
            yield Still(still_name(path), read_still(local), licence)
