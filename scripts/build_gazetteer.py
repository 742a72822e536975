"""Build src/peru_qa/gazetteer.json (the entity extractor's curated names) from the draft in tests/data/entities/ and
a list of general-knowledge entries (Peru's regions, neighbours, state bodies, presidents).

Honesty rule (issue 33): entries that only the TEST half of the gold supports (`only_in_test`) and aliases seen only
in test documents (`aliases_only_in_test`) are dropped, so the test figures of benchmarks/entities.py measure names the
extractor was not fitted on. General-knowledge entries were written from what any reader of Peruvian news knows,
not from the test gold; an entry that also exists in the draft only from test documents is reported by the
benchmark (`general_also_test_only`), not hidden.

    python scripts/build_gazetteer.py
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRAFT = ROOT / "tests/data/entities/gazetteer_draft.json"
OUT = ROOT / "src/peru_qa/gazetteer.json"
GENERAL = "general knowledge"

# (name, type, English aliases, Spanish aliases)
_GENERAL: list[tuple[str, str, list[str], list[str]]] = [
    # Peru's 24 departments + Callao, and their capitals
    *[(n, "place", [n.replace("í", "i").replace("á", "a").replace("ú", "u").replace("é", "e")], [n]) for n in [
        "Amazonas", "Áncash", "Apurímac", "Arequipa", "Ayacucho", "Cajamarca", "Callao", "Cusco", "Huancavelica",
        "Huánuco", "Ica", "Junín", "La Libertad", "Lambayeque", "Lima", "Loreto", "Madre de Dios", "Moquegua",
        "Pasco", "Piura", "Puno", "San Martín", "Tacna", "Tumbes", "Ucayali",
        "Chachapoyas", "Huaraz", "Chimbote", "Abancay", "Andahuaylas", "Huamanga", "Cusco", "Huancayo", "Trujillo",
        "Chiclayo", "Iquitos", "Puerto Maldonado", "Cerro de Pasco", "Juliaca", "Moyobamba", "Tarapoto",
        "Pucallpa", "Tingo María", "Juanjuí", "Sullana", "Talara", "Chincha", "Pisco", "Nazca",
        "Huaral", "Huacho", "Barranca", "Cañete", "Satipo", "La Oroya", "Jaén", "Bagua", "Yurimaguas",
        "Desaguadero", "Ilo", "Matarani", "Chancay", "Pichari", "Kimbiri", "Pataz",
        "Tambopata", "Putumayo", "Ucayali", "Marañón", "Huallaga", "Titicaca",
        "San Juan de Lurigancho", "Villa El Salvador", "Comas", "Ate", "San Martín de Porres", "Los Olivos",
        "Independencia", "Puente Piedra", "Carabayllo", "Chorrillos", "Miraflores", "San Isidro", "Surco",
        "La Victoria", "Rímac", "Breña", "Ventanilla", "Gamarra",
    ]],
    ("Perú", "place", ["Peru"], ["Perú"]),
    ("Colombia", "place", ["Colombia"], ["Colombia"]),
    ("Ecuador", "place", ["Ecuador"], ["Ecuador"]),
    ("Bolivia", "place", ["Bolivia"], ["Bolivia"]),
    ("Brasil", "place", ["Brazil"], ["Brasil"]),
    ("Chile", "place", ["Chile"], ["Chile"]),
    ("Venezuela", "place", ["Venezuela"], ["Venezuela"]),
    ("Argentina", "place", ["Argentina"], ["Argentina"]),
    ("Paraguay", "place", ["Paraguay"], ["Paraguay"]),
    ("Uruguay", "place", ["Uruguay"], ["Uruguay"]),
    ("México", "place", ["Mexico"], ["México"]),
    ("Panamá", "place", ["Panama"], ["Panamá"]),
    ("Costa Rica", "place", ["Costa Rica"], ["Costa Rica"]),
    ("Honduras", "place", ["Honduras"], ["Honduras"]),
    ("Guatemala", "place", ["Guatemala"], ["Guatemala"]),
    ("El Salvador", "place", ["El Salvador"], ["El Salvador"]),
    ("Estados Unidos", "place", ["United States", "USA", "U.S."], ["Estados Unidos", "EE. UU.", "EE.UU."]),
    ("Canadá", "place", ["Canada"], ["Canadá"]),
    ("España", "place", ["Spain"], ["España"]),
    ("Italia", "place", ["Italy"], ["Italia"]),
    ("Países Bajos", "place", ["Netherlands", "Holland"], ["Países Bajos", "Holanda"]),
    ("Bélgica", "place", ["Belgium"], ["Bélgica"]),
    ("Alemania", "place", ["Germany"], ["Alemania"]),
    ("Francia", "place", ["France"], ["Francia"]),
    ("Reino Unido", "place", ["United Kingdom", "UK", "Britain"], ["Reino Unido"]),
    ("China", "place", ["China"], ["China"]),
    ("Rusia", "place", ["Russia"], ["Rusia"]),
    ("Europa", "place", ["Europe"], ["Europa"]),
    ("América Latina", "place", ["Latin America"], ["América Latina", "Latinoamérica"]),
    ("Sudamérica", "place", ["South America"], ["Sudamérica", "América del Sur"]),
    ("África", "place", ["Africa"], ["África"]),
    ("Asia", "place", ["Asia"], ["Asia"]),
    ("Amazonía", "place", ["Amazon", "Amazonia"], ["Amazonía"]),
    ("Andes", "place", ["Andes"], ["Andes"]),
    ("Pacífico", "place", ["Pacific"], ["Pacífico"]),
    ("VRAEM", "place", ["VRAEM"], ["VRAEM"]),
    ("Bogotá", "place", ["Bogota"], ["Bogotá"]),
    ("Quito", "place", ["Quito"], ["Quito"]),
    ("Guayaquil", "place", ["Guayaquil"], ["Guayaquil"]),
    ("La Paz", "place", ["La Paz"], ["La Paz"]),
    ("Santiago", "place", ["Santiago"], ["Santiago"]),
    ("Caracas", "place", ["Caracas"], ["Caracas"]),
    ("Buenos Aires", "place", ["Buenos Aires"], ["Buenos Aires"]),
    ("Madrid", "place", ["Madrid"], ["Madrid"]),
    ("Washington", "place", ["Washington"], ["Washington"]),
    ("Róterdam", "place", ["Rotterdam"], ["Róterdam"]),
    ("Amberes", "place", ["Antwerp"], ["Amberes"]),
    # the Peruvian state
    ("Congreso de la República", "organization", ["Congress", "Peruvian Congress"],
     ["Congreso", "Congreso de la República"]),
    ("Poder Judicial", "organization", ["Judiciary"], ["Poder Judicial"]),
    ("Ministerio Público", "organization", ["Public Ministry", "Public Prosecutor's Office"], ["Ministerio Público"]),
    ("Fiscalía de la Nación", "organization", [], ["Fiscalía de la Nación"]),
    ("Tribunal Constitucional", "organization", ["Constitutional Court", "Constitutional Tribunal"],
     ["Tribunal Constitucional"]),
    ("Corte Suprema de Justicia", "organization", ["Supreme Court"], ["Corte Suprema", "Corte Suprema de Justicia"]),
    ("Defensoría del Pueblo", "organization", ["Ombudsman's Office", "Ombudsman"], ["Defensoría del Pueblo"]),
    ("Contraloría General de la República", "organization", ["Comptroller General"],
     ["Contraloría", "Contraloría General de la República"]),
    ("Policía Nacional del Perú", "organization", ["National Police", "Peruvian National Police", "PNP"],
     ["Policía Nacional", "Policía Nacional del Perú", "PNP"]),
    ("Fuerzas Armadas", "organization", ["Armed Forces"], ["Fuerzas Armadas"]),
    ("Ejército del Perú", "organization", ["Peruvian Army"], ["Ejército", "Ejército del Perú"]),
    ("Marina de Guerra del Perú", "organization", ["Peruvian Navy", "Navy"],
     ["Marina de Guerra", "Marina de Guerra del Perú"]),
    ("Fuerza Aérea del Perú", "organization", ["Peruvian Air Force"], ["Fuerza Aérea del Perú", "FAP"]),
    ("Ministerio del Interior", "organization", ["Interior Ministry", "Ministry of the Interior"],
     ["Ministerio del Interior", "Mininter"]),
    ("Ministerio de Defensa", "organization", ["Defence Ministry", "Defense Ministry", "Ministry of Defense"],
     ["Ministerio de Defensa", "Mindef"]),
    ("Ministerio de Justicia y Derechos Humanos", "organization", ["Justice Ministry", "Ministry of Justice"],
     ["Ministerio de Justicia", "Minjus", "Ministerio de Justicia y Derechos Humanos"]),
    ("Ministerio de Energía y Minas", "organization", ["Ministry of Energy and Mines", "Energy and Mines Ministry"],
     ["Ministerio de Energía y Minas", "MINEM", "Minem"]),
    ("Ministerio del Ambiente", "organization", ["Environment Ministry", "Ministry of the Environment"],
     ["Ministerio del Ambiente", "Minam", "MINAM"]),
    ("Ministerio de Economía y Finanzas", "organization", ["Ministry of Economy and Finance", "Finance Ministry"],
     ["Ministerio de Economía y Finanzas", "MEF"]),
    ("Ministerio de Relaciones Exteriores", "organization", ["Foreign Ministry", "Foreign Affairs Ministry"],
     ["Cancillería", "Ministerio de Relaciones Exteriores"]),
    ("Ministerio de la Mujer y Poblaciones Vulnerables", "organization", ["Women's Ministry"],
     ["Ministerio de la Mujer", "MIMP", "Ministerio de la Mujer y Poblaciones Vulnerables"]),
    ("Presidencia del Consejo de Ministros", "organization", ["Prime Minister's Office", "PCM"],
     ["Presidencia del Consejo de Ministros", "PCM"]),
    ("DEVIDA", "organization", ["DEVIDA", "Devida"], ["DEVIDA", "Devida"]),
    ("SUNAT", "organization", ["SUNAT", "Sunat"], ["SUNAT", "Sunat"]),
    ("Superintendencia de Banca, Seguros y AFP", "organization", ["SBS"],
     ["SBS", "Superintendencia de Banca, Seguros y AFP"]),
    ("Unidad de Inteligencia Financiera", "organization", ["Financial Intelligence Unit", "FIU", "UIF"],
     ["Unidad de Inteligencia Financiera", "UIF", "UIF-Perú"]),
    ("INPE", "organization", ["National Penitentiary Institute", "INPE"], ["Instituto Nacional Penitenciario", "INPE"]),
    ("INEI", "organization", ["INEI"], ["INEI", "Instituto Nacional de Estadística e Informática"]),
    ("SERFOR", "organization", ["SERFOR"], ["SERFOR", "Serfor"]),
    ("OSINFOR", "organization", ["OSINFOR"], ["OSINFOR", "Osinfor"]),
    ("SERNANP", "organization", ["SERNANP"], ["SERNANP", "Sernanp"]),
    ("SUCAMEC", "organization", ["SUCAMEC"], ["SUCAMEC", "Sucamec"]),
    ("Dirandro", "organization", ["Dirandro", "DIRANDRO"], ["Dirandro", "DIRANDRO"]),
    ("Dircote", "organization", ["Dircote", "DIRCOTE"], ["Dircote", "DIRCOTE"]),
    ("Jurado Nacional de Elecciones", "organization", ["National Elections Jury", "JNE"],
     ["Jurado Nacional de Elecciones", "JNE"]),
    ("Junta Nacional de Justicia", "organization", ["National Board of Justice", "JNJ"],
     ["Junta Nacional de Justicia", "JNJ"]),
    ("Comisión de la Verdad y Reconciliación", "organization", ["Truth and Reconciliation Commission", "CVR"],
     ["Comisión de la Verdad y Reconciliación", "CVR"]),
    # international bodies
    ("UNODC", "organization", ["UNODC", "United Nations Office on Drugs and Crime"],
     ["UNODC", "Oficina de las Naciones Unidas contra la Droga y el Delito"]),
    ("Naciones Unidas", "organization", ["United Nations", "UN"], ["Naciones Unidas", "ONU"]),
    ("Drug Enforcement Administration", "organization", ["Drug Enforcement Administration", "DEA"], ["DEA"]),
    ("Interpol", "organization", ["Interpol", "INTERPOL"], ["Interpol", "INTERPOL"]),
    ("Europol", "organization", ["Europol"], ["Europol"]),
    ("Unión Europea", "organization", ["European Union", "EU"], ["Unión Europea", "UE"]),
    ("Organización de los Estados Americanos", "organization", ["Organization of American States", "OAS"],
     ["Organización de los Estados Americanos", "OEA"]),
    ("Banco Mundial", "organization", ["World Bank"], ["Banco Mundial"]),
    ("Fondo Monetario Internacional", "organization", ["International Monetary Fund", "IMF"],
     ["Fondo Monetario Internacional", "FMI"]),
    ("GAFI", "organization", ["Financial Action Task Force", "FATF"], ["GAFI", "GAFILAT"]),
    ("InSight Crime", "organization", ["InSight Crime"], ["InSight Crime"]),
    # armed and criminal groups every account of Peru names
    ("Sendero Luminoso", "organization", ["Shining Path", "PCP-SL"], ["Sendero Luminoso", "PCP-SL"]),
    ("Movimiento Revolucionario Túpac Amaru", "organization", ["Tupac Amaru Revolutionary Movement", "MRTA"],
     ["Movimiento Revolucionario Túpac Amaru", "MRTA"]),
    ("FARC", "organization", ["FARC", "Revolutionary Armed Forces of Colombia"],
     ["FARC", "Fuerzas Armadas Revolucionarias de Colombia"]),
    ("ELN", "organization", ["ELN", "National Liberation Army"], ["ELN", "Ejército de Liberación Nacional"]),
    ("Tren de Aragua", "organization", ["Tren de Aragua"], ["Tren de Aragua"]),
    ("Cártel de Sinaloa", "organization", ["Sinaloa Cartel", "Sinaloa cartel"],
     ["Cártel de Sinaloa", "Cartel de Sinaloa"]),
    ("Cártel de Jalisco Nueva Generación", "organization", ["Jalisco New Generation Cartel", "CJNG"],
     ["Cártel de Jalisco Nueva Generación", "CJNG"]),
    ("Primeiro Comando da Capital", "organization", ["Primeiro Comando da Capital", "PCC"],
     ["Primeiro Comando da Capital", "PCC"]),
    ("Comando Vermelho", "organization", ["Comando Vermelho"], ["Comando Vermelho"]),
    ("Clan del Golfo", "organization", ["Gulf Clan"], ["Clan del Golfo"]),
    # Peru's presidents and best-known public figures since 1990
    ("Alberto Fujimori", "person", ["Alberto Fujimori"], ["Alberto Fujimori"]),
    ("Keiko Fujimori", "person", ["Keiko Fujimori"], ["Keiko Fujimori"]),
    ("Vladimiro Montesinos", "person", ["Vladimiro Montesinos"], ["Vladimiro Montesinos"]),
    ("Alejandro Toledo", "person", ["Alejandro Toledo"], ["Alejandro Toledo"]),
    ("Alan García", "person", ["Alan García", "Alan Garcia"], ["Alan García"]),
    ("Ollanta Humala", "person", ["Ollanta Humala"], ["Ollanta Humala"]),
    ("Pedro Pablo Kuczynski", "person", ["Pedro Pablo Kuczynski"], ["Pedro Pablo Kuczynski"]),
    ("Martín Vizcarra", "person", ["Martín Vizcarra", "Martin Vizcarra"], ["Martín Vizcarra"]),
    ("Manuel Merino", "person", ["Manuel Merino"], ["Manuel Merino"]),
    ("Francisco Sagasti", "person", ["Francisco Sagasti"], ["Francisco Sagasti"]),
    ("Pedro Castillo", "person", ["Pedro Castillo"], ["Pedro Castillo"]),
    ("Dina Boluarte", "person", ["Dina Boluarte"], ["Dina Boluarte"]),
    ("José Jerí", "person", ["José Jerí", "Jose Jeri"], ["José Jerí"]),
    ("Abimael Guzmán", "person", ["Abimael Guzmán", "Abimael Guzman"], ["Abimael Guzmán"]),
    ("Pablo Escobar", "person", ["Pablo Escobar"], ["Pablo Escobar"]),
]


def _general_entries() -> list[dict]:
    out: dict[tuple[str, str], dict] = {}
    for name, kind, en, es in _GENERAL:
        entry = out.setdefault((name, kind), {"name": name, "type": kind, "aliases_en": [], "aliases_es": [],
                                              "context_only_aliases": [], "documents": [], "sources": [GENERAL]})
        entry["aliases_en"] = sorted(set(entry["aliases_en"]) | set(en))
        entry["aliases_es"] = sorted(set(entry["aliases_es"]) | set(es) | {name})
    return list(out.values())


def build() -> dict:
    draft = json.loads(DRAFT.read_text(encoding="utf-8"))
    entries: dict[tuple[str, str], dict] = {}
    dropped = 0
    for e in draft["entries"]:
        if e.get("only_in_test"):
            dropped += 1
            continue
        test_only = set(e.get("aliases_only_in_test", []))
        entries[(e["name"], e["type"])] = {
            "name": e["name"], "type": e["type"],
            "aliases_en": [a for a in e["aliases_en"] if a not in test_only],
            "aliases_es": [a for a in e["aliases_es"] if a not in test_only],
            "context_only_aliases": [a for a in e.get("context_only_aliases", []) if a not in test_only],
            "documents": [d for d in e["documents"] if d not in draft["meta"]["test_documents"]],
            "sources": ["documents/"],
            **({"note": e["note"]} if e.get("note") else {}),
        }
    test_only_names = {e["name"] for e in draft["entries"] if e.get("only_in_test")}
    general_overlap = []
    for g in _general_entries():
        key = (g["name"], g["type"])
        if key in entries:
            have = entries[key]
            for side in ("aliases_en", "aliases_es"):
                have[side] = sorted(set(have[side]) | set(g[side]))
            have["sources"] = sorted(set(have["sources"]) | {GENERAL})
        else:
            entries[key] = g
            if g["name"] in test_only_names:
                general_overlap.append(g["name"])
    for e in entries.values():
        # the name itself is an alias in its own language's list when neither side lists it
        if e["name"] not in e["aliases_en"] + e["aliases_es"] + e["context_only_aliases"]:
            e["aliases_es"].append(e["name"])
    return {
        "meta": {
            "description": "Curated people, organizations and places for peru_qa.entities (issue 33). Built by "
                           "scripts/build_gazetteer.py from tests/data/entities/gazetteer_draft.json without the "
                           "entries and aliases only the test half of the gold supports, plus general-knowledge "
                           "entries (sources: 'general knowledge'). documents: the dev/unannotated files of "
                           "documents/ that support an entry. context_only_aliases link only inside a document "
                           "that names the entity in full.",
            "dropped_only_in_test": dropped,
            "general_also_test_only": sorted(general_overlap),
        },
        "entries": sorted(entries.values(), key=lambda e: (e["type"], e["name"])),
    }


if __name__ == "__main__":
    data = build()
    OUT.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(data['entries'])} entries ({data['meta']['dropped_only_in_test']} test-only dropped; "
          f"general entries that the draft has only from test: {data['meta']['general_also_test_only']})")
